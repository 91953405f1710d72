# JVM binding of sessionrepl. Included by the top-level Makefile.
#
#   jvm-lib       cargo build --release -p sessionrepl-jni (libsessionrepl_jni.so)
#   jvm-jar       javac + jar: build/jvm/sessionrepl.jar (io.sessionrepl and
#                 io.sessionrepl.tomcat), compiled against Debian's Tomcat
#                 jars (libtomcat10-java), no Maven
#   jvm-install   part of `make install`: PREFIX/share/java/sessionrepl.jar
#                 and LIBDIR/libsessionrepl_jni.so (skipped with a warning
#                 when there is no JDK, unless CI=true)
#   java-test     the Java tests against the installed stage
#                 (build/ffi/stage): the io.sessionrepl API tests, then the
#                 Tomcat drop-in tests. Without javac they fail under
#                 CI=true and are skipped (loudly) otherwise.

JAVAC          ?= javac
JAR            ?= jar
JAVA           ?= java
JVM_BUILD      := build/jvm
TOMCAT_JARS    := $(addprefix /usr/share/java/tomcat10-,catalina.jar catalina-ha.jar tribes.jar coyote.jar \
                  util.jar util-scan.jar juli.jar api.jar servlet-api.jar jaspic-api.jar annotations-api.jar \
                  el-api.jar jsp-api.jar)
TOMCAT_CP      := $(subst $(eval) ,:,$(TOMCAT_JARS))
JVM_SOURCES    := $(shell find java/io -name '*.java' 2>/dev/null)
JVM_TESTS      := $(shell find java/test -name '*.java' 2>/dev/null)
# A JDK and Debian's Tomcat jars (the io.sessionrepl.tomcat classes compile against them).
JVM_HAVE_JDK   := $(shell command -v $(JAVAC) >/dev/null 2>&1 && command -v $(JAR) >/dev/null 2>&1 \
                  && ls $(TOMCAT_JARS) >/dev/null 2>&1 && echo yes)
JVM_JOPTS      := -Djava.net.preferIPv4Stack=true -Xss512k -XX:+UseSerialGC -XX:TieredStopAtLevel=1
DATADIR        ?= $(PREFIX)/share

.PHONY: jvm-lib jvm-jar jvm-install java-test

jvm-lib:
	$(FFI_CARGO) build --release -p sessionrepl-jni

jvm-jar: $(JVM_BUILD)/sessionrepl.jar

$(JVM_BUILD)/sessionrepl.jar: $(JVM_SOURCES)
	@rm -rf $(JVM_BUILD)/classes && mkdir -p $(JVM_BUILD)/classes
	$(JAVAC) --release 11 -Xlint:all,-options,-classfile -Xdoclint:all/protected -Werror -encoding UTF-8 \
	  -cp $(TOMCAT_CP) -d $(JVM_BUILD)/classes $(JVM_SOURCES)
	$(JAR) --create --file $@ -C $(JVM_BUILD)/classes .

ifeq ($(JVM_HAVE_JDK),yes)
jvm-install: jvm-lib jvm-jar
	install -d $(DESTDIR)$(LIBDIR) $(DESTDIR)$(DATADIR)/java
	install -m 0755 $(FFI_REL)/libsessionrepl_jni.so $(DESTDIR)$(LIBDIR)/libsessionrepl_jni.so
	install -m 0644 $(JVM_BUILD)/sessionrepl.jar $(DESTDIR)$(DATADIR)/java/sessionrepl.jar
else ifeq ($(CI),true)
jvm-install:
	@echo "jvm-install: javac/jar or Debian's Tomcat jars not found (apt-get install default-jdk-headless libtomcat10-java)"; exit 1
else
jvm-install:
	@echo "jvm-install: WARNING: no JDK (javac/jar) or no Tomcat jars (libtomcat10-java); sessionrepl.jar and libsessionrepl_jni.so not installed"
endif

install: jvm-install

ifeq ($(JVM_HAVE_JDK),yes)
java-test: ffi-stage
	@rm -rf $(JVM_BUILD)/testclasses && mkdir -p $(JVM_BUILD)/testclasses
	$(JAVAC) --release 11 -encoding UTF-8 -cp $(FFI_STAGE)/share/java/sessionrepl.jar:$(TOMCAT_CP) \
	  -d $(JVM_BUILD)/testclasses $(JVM_TESTS)
	$(JAVA) $(JVM_JOPTS) -Djava.library.path=$(FFI_STAGE)/lib \
	  -cp $(FFI_STAGE)/share/java/sessionrepl.jar:$(JVM_BUILD)/testclasses io.sessionrepl.ApiTest
	$(JAVA) $(JVM_JOPTS) -Djava.library.path=$(FFI_STAGE)/lib \
	  -cp $(FFI_STAGE)/share/java/sessionrepl.jar:$(TOMCAT_CP):$(JVM_BUILD)/testclasses \
	  io.sessionrepl.tomcat.TomcatTest $(FFI_STAGE)/share/java/sessionrepl.jar $(FFI_STAGE)/lib \
	  $(TOMCAT_CP) $(JVM_BUILD)/testclasses $(JVM_BUILD)/tomcat
else ifeq ($(CI),true)
java-test:
	@echo "java-test: FAILED: javac/jar or Debian's Tomcat jars not found (apt-get install default-jdk-headless libtomcat10-java)"; exit 1
else
java-test:
	@echo "java-test: SKIPPED: javac/jar or Debian's Tomcat jars not found (apt-get install default-jdk-headless libtomcat10-java); CI=true fails here"
endif

## S8 (bench/SCENARIOS.md): the native channel from Java through JNI
## against Tribes' GroupChannel in one JVM, after the Rust S2 of the same
## run (the sync-ack p50 goal is a ratio to it). JVM_BENCH_COUNT fastasync
## messages, JVM_BENCH_ACKS sync-ack messages, 1 KiB each.
JVM_BENCH_COUNT ?= 200000
JVM_BENCH_ACKS  ?= 20000
.PHONY: bench-jvm
bench-jvm: release jvm-lib jvm-jar
	@mkdir -p $(JVM_BUILD)/bench
	$(RELEASE_BIN) bench --scenario S2 --scale 10 --no-peer --no-floor | tee $(JVM_BUILD)/bench/s2.txt
	$(JAVAC) --release 11 -encoding UTF-8 -cp $(JVM_BUILD)/sessionrepl.jar:$(TOMCAT_CP) \
	  -d $(JVM_BUILD)/bench bench/jvm/JvmBench.java
	$(JAVA) -Djava.net.preferIPv4Stack=true -Djava.library.path=$(FFI_REL) \
	  -cp $(JVM_BUILD)/sessionrepl.jar:$(TOMCAT_CP):$(JVM_BUILD)/bench JvmBench $(JVM_BENCH_COUNT) $(JVM_BENCH_ACKS) \
	  $$(sed -n 's/^S2 .* p50_us=\([0-9.]*\) .*/\1/p' $(JVM_BUILD)/bench/s2.txt | head -1)

## S8's Tomcat end-to-end figure: two Tomcat nodes (DeltaManager, sync-ack
## replication), stock Tribes then the native classes, then NativeSessionManager
## (backup mode, one backup); same load generator.
TOMCAT_BENCH_REQUESTS ?= 20000
TOMCAT_BENCH_CLIENTS  ?= 4
.PHONY: bench-tomcat
bench-tomcat: jvm-lib jvm-jar
	@rm -rf $(JVM_BUILD)/tbench && mkdir -p $(JVM_BUILD)/tbench
	$(JAVAC) --release 11 -encoding UTF-8 -cp $(JVM_BUILD)/sessionrepl.jar:$(TOMCAT_CP) -d $(JVM_BUILD)/tbench \
	  $(JVM_TESTS) bench/jvm/TomcatBench.java
	$(JAVA) -Djava.net.preferIPv4Stack=true -cp $(JVM_BUILD)/sessionrepl.jar:$(TOMCAT_CP):$(JVM_BUILD)/tbench \
	  io.sessionrepl.tomcat.TomcatBench $(abspath $(JVM_BUILD)/sessionrepl.jar) $(abspath $(FFI_REL)) $(TOMCAT_CP) \
	  $(JVM_BUILD)/tbench $(JVM_BUILD)/tomcat-bench $(TOMCAT_BENCH_REQUESTS) $(TOMCAT_BENCH_CLIENTS)
