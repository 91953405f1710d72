//! `sessionrepl`: run the demo, a node, or the benchmarks.

mod daemon;
mod demo;
mod node;
mod store_node;

use std::process::ExitCode;

const USAGE: &str = "\
usage: sessionrepl <command> [options]

commands:
  demo                      a small cluster on loopback, with an account of what happened
  node [--store] [--config FILE|server.xml] [--set key=value]... [--log-level L]
                            run one node until SIGINT/SIGTERM (a store node drains
                            first), one line per event; /metrics with metricsPort=N
                            (see docs/OPERATIONS.md)
  store-node [--events] [--set key=value]...
                            one session-store node driven by commands on stdin
                            (see cli/src/store_node/)
  bench [--scenario S1,S4] [--scale N] [--io mio|uring] [--no-peer] [--no-floor]
        [--set key=value]... [--rounds N] [--plot FILE.svg [--from LINES]]
                            benchmark scenarios of bench/SCENARIOS.md; with
                            --set encryptionKey=HEX (or tls*File) each scenario
                            prints a clear and an encrypted row; --rounds N
                            runs every row N times, interleaved, and ends
                            with `#` lines: the median of the per-round
                            ratios to the floor, the peer and (encrypted
                            rows) clear text, with [min-max]
  help                      this text
";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let Some(cmd) = args.first() else {
        eprint!("{USAGE}");
        return ExitCode::from(2);
    };
    let rest = &args[1..];
    let r = match cmd.as_str() {
        "demo" => demo::run(rest),
        "node" => daemon::run(rest),
        "store-node" => store_node::run(rest),
        "bench" => sessionrepl_cli::bench::cli(rest),
        "help" | "--help" | "-h" => {
            print!("{USAGE}");
            Ok(())
        }
        other => Err(format!("unknown command '{other}'\n{USAGE}")),
    };
    match r {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("sessionrepl: {e}");
            ExitCode::FAILURE
        }
    }
}
