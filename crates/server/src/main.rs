use oxcd_server::config::{self, Parsed};
use std::collections::BTreeMap;

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() {
    without_transparent_huge_pages();
    #[cfg(feature = "failpoints")]
    let _failpoints = crash_on_failpoint_panic();
    let env: BTreeMap<String, String> = std::env::vars().collect();
    let parsed = match config::parse(std::env::args().collect(), &env) {
        Ok(p) => p,
        Err(e) => {
            eprintln!("{}", e.message);
            if e.usage {
                eprintln!("Run 'oxcd --help' for usage.");
                std::process::exit(2);
            }
            std::process::exit(1);
        }
    };
    let (config, warnings) = match parsed {
        Parsed::Help(text) => {
            print!("{text}");
            return;
        }
        Parsed::Version => {
            println!("oxcd Version: {}", env!("CARGO_PKG_VERSION"));
            println!("API version: 3.5");
            return;
        }
        Parsed::Run { config, warnings } => (config, warnings),
    };
    oxcd_server::logging::init(&config.log_level);
    for w in warnings {
        tracing::warn!("{w}");
    }
    let runtime = match oxcd_server::runtime() {
        Ok(r) => r,
        Err(e) => {
            tracing::error!(error = %e, "cannot start the async runtime");
            std::process::exit(1);
        }
    };
    if let Err(e) = runtime.block_on(oxcd_server::run(*config)) {
        let code = e.exit_code();
        if code != 0 {
            tracing::error!(error = %e, "oxcd stopped");
            eprintln!("oxcd: {e}");
        }
        std::process::exit(code);
    }
}

/// The allocator asks the kernel for huge pages, and the first touch of one zeroes 2 MiB: on a
/// busy machine the apply thread stalled 10-25 ms on such faults, every waiting client with it
/// (put p99 3x worse). The store gains little from them, so they are off for the process, as
/// Redis and MongoDB advise for their own.
fn without_transparent_huge_pages() {
    #[cfg(target_os = "linux")]
    if let Err(e) = rustix::thread::disable_transparent_huge_pages(true) {
        eprintln!("oxcd: cannot turn transparent huge pages off: {e}");
    }
}

/// Test builds: failpoints from `FAILPOINTS`, and a failpoint's `panic` ends the process at
/// once (no unwinding, no clean shutdown), as a crash at that point would.
#[cfg(feature = "failpoints")]
fn crash_on_failpoint_panic() -> fail::FailScenario<'static> {
    let report = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        report(info);
        let message = info
            .payload()
            .downcast_ref::<String>()
            .map(String::as_str)
            .or_else(|| info.payload().downcast_ref::<&str>().copied())
            .unwrap_or("");
        if message.starts_with("failpoint") {
            std::process::abort();
        }
    }));
    fail::FailScenario::setup()
}
