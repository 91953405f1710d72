//! `sessionrepl store-node`: one session-store node driven line by line on
//! stdin, one answer line per command on stdout. The demo and the
//! process-level tests run their nodes this way, so a SIGKILL is real.
//!
//! ```text
//! ready addr=<host:port> sessions=<n> transfer_ms=<ms>   (or: error <why>)
//! create <id> <name>=<value>          -> ok copies=<n> | err <why>
//! set <id> <name>=<value>             -> ok copies=<n> | err <why>  (fetches first)
//! get <id>                            -> found <id> <name>=<value>... | moved <addr> | notfound <id>
//! chid <old> <new>                    -> ok copies=<n> | err <why>
//! invalidate <id>                     -> ok copies=<n> | err <why>
//! bulk <create|set> <prefix> <from> <to> <name> <value> <size> [retry]
//!                                     -> bulk n=<n> acked=<a> failed=<f> retried=<r> secs=<s>
//!                                        (retry: a set answered "not applied" is tried
//!                                        again, up to 3 times)
//! check <prefix> <from> <to> <name> <value>
//!                                     -> check ok=<n> missing=<m> wrong=<w>
//! waitmembers <n> <timeout_ms>        -> members n=<count>
//! drain                               -> ok drained | err <why>
//! stats                               -> stats sessions=<n> commits=<c> acked=<a> ...
//! counters                            -> counters <field>=<n>... (every SessionStats field)
//! quit                                -> bye (after close)
//! ```
//!
//! The list-append commands of the Jepsen-style test (`append`, `read`,
//! `holders`) are in [`append`].
//!
//! A line `@<tag> <command>` runs the command on a pool of worker threads
//! and answers `@<tag> <answer>` whenever it is done, so one node serves
//! many concurrent clients; untagged commands run one at a time, in order.
//! `quit` is always untagged.
//!
//! With `--events`, session events are printed as `event <what> <id>` lines
//! as they happen (readers skip lines starting with `event`).

mod append;

use sessionrepl::session::{SessionEvent, SessionStore, StoreLookup};
use std::io::BufRead;
use std::time::{Duration, Instant};

const WAIT: Duration = Duration::from_secs(20);
/// Times `bulk set` tries a commit again that was answered "not applied".
const RETRIES: u32 = 3;
/// Tagged commands running at once; more wait in [`TAGGED_QUEUE`].
const WORKERS: usize = 32;
/// Tagged commands read but not started; reading stdin waits beyond this.
const TAGGED_QUEUE: usize = 256;

fn padded(value: &str, size: usize) -> Vec<u8> {
    let mut v = value.as_bytes().to_vec();
    while v.len() < size {
        v.push(b'#');
    }
    v
}

fn matches(stored: &[u8], value: &str) -> bool {
    stored.starts_with(value.as_bytes()) && stored[value.len()..].iter().all(|b| *b == b'#')
}

fn kv(s: &str) -> Result<(&str, &str), String> {
    s.split_once('=')
        .ok_or_else(|| format!("expected name=value, got {s}"))
}

fn lookup(store: &SessionStore, id: &str) -> String {
    match store.get(id.as_bytes()) {
        Ok(StoreLookup::Local(s)) => {
            let mut attrs: Vec<String> = s
                .attributes()
                .map(|(k, v)| {
                    let v = String::from_utf8_lossy(v);
                    format!("{}={}", String::from_utf8_lossy(k), v.trim_end_matches('#'))
                })
                .collect();
            attrs.sort();
            format!("found {id} {}", attrs.join(" "))
        }
        Ok(StoreLookup::Moved(a)) => format!("moved {a}"),
        Ok(StoreLookup::NotFound) => format!("notfound {id}"),
        Err(e) => format!("err {e}"),
    }
}

/// Makes sure this node holds a copy of `id` (fetching it) before a commit.
fn hold(store: &SessionStore, id: &str) -> Result<(), String> {
    match store.get(id.as_bytes()).map_err(|e| e.to_string())? {
        StoreLookup::Local(_) => Ok(()),
        StoreLookup::Moved(a) => Err(format!("moved to {a}")),
        StoreLookup::NotFound => Err("not found".into()),
    }
}

fn one(store: &SessionStore, what: &str, id: &str, attr: Option<&str>) -> Result<usize, String> {
    let e = |e: sessionrepl::Error| e.to_string();
    let h = match what {
        "create" | "set" => {
            let (k, v) = kv(attr.ok_or("missing name=value")?)?;
            let mut txn = store.begin(id.as_bytes().to_vec());
            txn.set(k.as_bytes().to_vec(), v.as_bytes().to_vec());
            if what == "create" {
                store.create(txn).map_err(e)?
            } else {
                hold(store, id)?;
                store.commit(txn).map_err(e)?
            }
        }
        "invalidate" => {
            hold(store, id)?;
            store.invalidate(id.as_bytes()).map_err(e)?
        }
        "chid" => {
            hold(store, id)?;
            let new = attr.ok_or("missing new id")?;
            store
                .change_id(id.as_bytes(), new.as_bytes().to_vec())
                .map_err(e)?
        }
        _ => return Err(format!("unknown command {what}")),
    };
    h.wait(WAIT).map_err(e)
}

fn bulk(store: &SessionStore, w: &[&str]) -> Result<String, String> {
    let (w, retry) = match w {
        [rest @ .., "retry"] => (rest, true),
        _ => (w, false),
    };
    let [what, prefix, from, to, name, value, size] = w else {
        return Err("bulk <create|set> <prefix> <from> <to> <name> <value> <size> [retry]".into());
    };
    let num = |s: &str| s.parse::<usize>().map_err(|_| format!("bad number {s}"));
    let (from, to, size) = (num(from)?, num(to)?, num(size)?);
    let val = bytes::Bytes::from(padded(value, size));
    let t0 = Instant::now();
    let mut handles = Vec::new();
    let mut failed = 0;
    let mut first: Option<String> = None;
    let mut note = |e: String| {
        if first.is_none() {
            first = Some(e);
        }
    };
    let txn_for = |id: &str| {
        let mut txn = store.begin(id.as_bytes().to_vec());
        txn.set(name.as_bytes().to_vec(), val.clone());
        txn
    };
    for i in from..to {
        let id = format!("{prefix}{i}");
        let txn = txn_for(&id);
        let r = if *what == "create" {
            store.create(txn)
        } else {
            match hold(store, &id) {
                Ok(()) => store.commit(txn),
                Err(e) => {
                    note(format!("{id}:{}", e.replace(' ', "_")));
                    failed += 1;
                    continue;
                }
            }
        };
        match r {
            Ok(h) => handles.push((id, h)),
            Err(e) => {
                note(format!("{id}:{}", e.to_string().replace(' ', "_")));
                failed += 1
            }
        }
    }
    let mut acked = 0;
    let mut retried = 0;
    for (id, h) in handles {
        let mut r = h.wait(WAIT);
        // With `retry`: a commit answered "not applied" (no ready primary
        // took it: the placement was moving, e.g. its primary had begun to
        // drain) is safe to try again, as an application would: up to
        // RETRIES times.
        let mut tries = 0;
        while retry
            && *what == "set"
            && tries < RETRIES
            && matches!(r, Err(sessionrepl::Error::Unreachable(_)))
        {
            tries += 1;
            retried += 1;
            std::thread::sleep(Duration::from_millis(20));
            r = store.commit(txn_for(&id)).and_then(|h| h.wait(WAIT));
        }
        match r {
            Ok(_) => acked += 1,
            Err(e) => {
                note(format!("{id}:{}", e.to_string().replace(' ', "_")));
                failed += 1
            }
        }
    }
    let first = first
        .map(|e| format!(" first_error={e}"))
        .unwrap_or_default();
    Ok(format!(
        "bulk n={} acked={acked} failed={failed} retried={retried} secs={:.3}{first}",
        to - from,
        t0.elapsed().as_secs_f64()
    ))
}

fn check(store: &SessionStore, w: &[&str]) -> Result<String, String> {
    let [prefix, from, to, name, value] = w else {
        return Err("check <prefix> <from> <to> <name> <value>".into());
    };
    let num = |s: &str| s.parse::<usize>().map_err(|_| format!("bad number {s}"));
    let (mut ok, mut missing, mut wrong) = (0, 0, 0);
    for i in num(from)?..num(to)? {
        let id = format!("{prefix}{i}");
        match store.get(id.as_bytes()) {
            Ok(StoreLookup::Local(s)) => match s.attribute(name.as_bytes()) {
                Some(v) if matches(v, value) => ok += 1,
                _ => wrong += 1,
            },
            _ => missing += 1,
        }
    }
    Ok(format!("check ok={ok} missing={missing} wrong={wrong}"))
}

fn handle(store: &SessionStore, copies: usize, line: &str) -> Option<String> {
    let w: Vec<&str> = line.split_whitespace().collect();
    let r = match w.as_slice() {
        [] => return None,
        ["quit"] => return Some("quit".into()),
        ["get", id] => Ok(lookup(store, id)),
        ["append", id, elem] => Ok(append::append(store, id, elem)),
        ["read", id] => Ok(append::read(store, id)),
        ["holders", id] => Ok(append::holders(store, id, copies)),
        [what @ ("create" | "set" | "chid"), id, arg] => {
            one(store, what, id, Some(arg)).map(|n| format!("ok copies={n}"))
        }
        ["invalidate", id] => one(store, "invalidate", id, None).map(|n| format!("ok copies={n}")),
        ["bulk", rest @ ..] => bulk(store, rest),
        ["check", rest @ ..] => check(store, rest),
        ["waitmembers", n, ms] => {
            let n: usize = n.parse().unwrap_or(0);
            let deadline = Instant::now() + Duration::from_millis(ms.parse().unwrap_or(10_000));
            while store.members().len() != n && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(20));
            }
            Ok(format!("members n={}", store.members().len()))
        }
        ["drain"] => store
            .drain(Duration::from_secs(30))
            .map(|()| "ok drained".into())
            .map_err(|e| e.to_string()),
        ["stats"] => {
            let s = store.stats();
            Ok(format!(
                "stats sessions={} commits={} acked={} failed={} promotions={} rereplications={} transferred={} handoffs={} fetches={}",
                s.sessions, s.commits, s.commits_acked, s.commits_failed, s.promotions,
                s.rereplications, s.sessions_transferred, s.handoffs, s.fetches
            ))
        }
        ["counters"] => Ok(counters(&store.stats())),
        _ => Err(format!("unknown command: {line}")),
    };
    Some(r.unwrap_or_else(|e| format!("err {e}")))
}

/// Every field of `SessionStats` as `name=value`, from its `Debug` form, so
/// counters the store adds show up without a change here.
fn counters(s: &sessionrepl::session::SessionStats) -> String {
    let dbg = format!("{s:?}");
    let inner = dbg
        .split_once('{')
        .and_then(|(_, r)| r.rsplit_once('}'))
        .map_or("", |(i, _)| i);
    let fields: Vec<String> = inner
        .split(',')
        .filter_map(|f| f.split_once(':'))
        .map(|(k, v)| format!("{}={}", k.trim(), v.trim()))
        .collect();
    format!("counters {}", fields.join(" "))
}

fn describe(e: &SessionEvent) -> Option<String> {
    let id = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
    Some(match e {
        SessionEvent::Created { id: i, .. } => format!("event created {}", id(i)),
        SessionEvent::Updated { id: i, .. } => format!("event updated {}", id(i)),
        SessionEvent::Expired { id: i, local } => format!("event expired {} local={local}", id(i)),
        SessionEvent::Invalidated { id: i, .. } => format!("event invalidated {}", id(i)),
        SessionEvent::IdChanged { old, new, .. } => {
            format!("event id-changed {} {}", id(old), id(new))
        }
        SessionEvent::Drained => "event drained".into(),
        _ => return None,
    })
}

/// Runs a store node on stdin/stdout until `quit` or end of input.
pub fn run(args: &[String]) -> Result<(), String> {
    let events = args.iter().any(|a| a == "--events");
    let rest: Vec<String> = args.iter().filter(|a| *a != "--events").cloned().collect();
    let cfg = super::node::parse_config(&rest)?;
    let copies = cfg.session.backup_count + 1;
    let mut b = SessionStore::builder(cfg);
    if events {
        b = b.event_listener(|e| {
            if let Some(l) = describe(e) {
                println!("{l}");
            }
        });
    }
    let store = b.open().map_err(|e| e.to_string())?;
    if let Err(e) = store.wait_ready(Duration::from_secs(60)) {
        println!("error {e}");
        store.close();
        return Err(e.to_string());
    }
    println!(
        "ready addr={} sessions={} transfer_ms={}",
        store.local_addr(),
        store.stats().sessions,
        store.ready_after().unwrap_or_default().as_millis()
    );
    let store = std::sync::Arc::new(store);
    let (tx, rx) = std::sync::mpsc::sync_channel::<(String, String)>(TAGGED_QUEUE);
    let rx = std::sync::Arc::new(std::sync::Mutex::new(rx));
    let workers: Vec<_> = (0..WORKERS)
        .map(|_| {
            let (rx, store) = (rx.clone(), store.clone());
            std::thread::spawn(move || {
                loop {
                    // The lock is held only while taking one command.
                    let next = rx.lock().unwrap_or_else(|e| e.into_inner()).recv();
                    let Ok((tag, cmd)) = next else { break };
                    if cmd.trim() == "quit" {
                        println!("{tag} err quit is untagged");
                        continue;
                    }
                    let r = handle(&store, copies, &cmd).unwrap_or_else(|| "err empty".into());
                    println!("{tag} {r}");
                }
            })
        })
        .collect();
    for line in std::io::stdin().lock().lines() {
        let Ok(line) = line else { break };
        let line = line.trim();
        if line.starts_with('@') {
            let (tag, cmd) = line.split_once(' ').unwrap_or((line, ""));
            if tx.send((tag.to_string(), cmd.to_string())).is_err() {
                break;
            }
            continue;
        }
        match handle(&store, copies, line) {
            Some(r) if r == "quit" => break,
            Some(r) => println!("{r}"),
            None => {}
        }
    }
    drop(tx);
    store.close();
    for w in workers {
        let _ = w.join();
    }
    println!("bye");
    Ok(())
}
