//! Helpers shared by the test binaries that run on both I/O drivers.

use sessionrepl::Config;

thread_local! {
    static IO: std::cell::RefCell<&'static str> = const { std::cell::RefCell::new("mio") };
}

/// A default config for the driver under test.
pub fn io_cfg() -> Config {
    let mut c = Config::default();
    c.io_backend = IO.with(|io| io.borrow().to_string());
    c
}

/// Runs `f` with every channel on driver `io`; the io_uring run is skipped
/// (with the reason printed) only where the kernel refuses io_uring.
pub fn with_io(io: &'static str, f: fn()) {
    if io == "uring" {
        if let Err(why) = sessionrepl::driver::uring::probe() {
            eprintln!("skipped: io_uring unavailable here: {why}");
            return;
        }
    }
    IO.with(|c| *c.borrow_mut() = io);
    f();
}

/// Generates `<test>::mio` and `<test>::uring` for each test body (the
/// including file declares `mod common` at its root).
macro_rules! on_both_drivers {
    ($($name:ident),* $(,)?) => {
        $(
            mod $name {
                #[test]
                fn mio() {
                    super::common::with_io("mio", super::$name);
                }
                #[test]
                fn uring() {
                    super::common::with_io("uring", super::$name);
                }
            }
        )*
    };
}
