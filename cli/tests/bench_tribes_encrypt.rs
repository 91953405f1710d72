//! The bench's Tribes peer row with a stock `EncryptInterceptor`
//! (`impl=tribes-encrypt`, what `sessionrepl bench --set encryptionKey=...`
//! prints beside the plain Tribes row). Skipped, with the reason printed,
//! where no JDK or Tribes jar is present; fails then when `CI=true`.

use std::time::Duration;

use sessionrepl_cli::bench::tribes::TribesHarness;
use sessionrepl_cli::bench::Scenario;

const K1: &str = "00112233445566778899aabbccddeeff0011223344556677";

#[test]
fn bench_harness_runs_tribes_with_encrypt_interceptor() {
    let h = match TribesHarness::discover() {
        Ok(h) => h,
        Err(why) => {
            assert!(
                std::env::var("CI").as_deref() != Ok("true"),
                "CI=true but the Tribes harness cannot run: {why}"
            );
            println!("SKIP tribes-encrypt bench row: {why}");
            return;
        }
    };
    let line = h
        .run_keyed(Scenario::S1, 2_000, 1024, Duration::from_secs(90), Some(K1))
        .unwrap()
        .unwrap();
    println!("{line}");
    assert_eq!(line.impl_name, "tribes-encrypt");
    assert_eq!((line.count, line.size), (2_000, 1024));
    assert!(line.msgs_per_s > 0.0, "{line}");
}
