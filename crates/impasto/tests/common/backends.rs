//! The backends the parity suites run on, and one `#[test]` per case that runs it on each.
//!
//! The cases themselves are `impasto::testing`'s functions, written against the backend
//! boundary. Here the list is the CPU engine; `impasto-gpu` (which this crate cannot depend on)
//! includes this file from its tests (`#[path = "../../impasto/tests/common/backends.rs"]`) and
//! passes its own list, its adapters with the CPU, to the same macro and cases.

use std::sync::Arc;

use impasto::backend::{Backend, CpuBackend};

/// The backends this crate's parity tests run every case on. A new backend in this crate is one
/// more line here.
pub fn backends() -> Vec<Arc<dyn Backend>> {
    vec![CpuBackend::shared()]
}

/// `for_each_backend! { LIST; name => |backend| case(backend, …); … }`: one `#[test] fn name`
/// per case, running it on every backend of `LIST` (a `Vec<Arc<dyn Backend>>` expression) in
/// turn, each named on stderr before it runs (so a failure says which one).
#[allow(unused_macros)]
macro_rules! for_each_backend {
    ($list:expr; $($test:ident => |$backend:ident| $case:expr;)+) => {$(
        #[test]
        fn $test() {
            let list: Vec<std::sync::Arc<dyn impasto::backend::Backend>> = $list;
            assert!(!list.is_empty(), "no backend to test");
            for b in &list {
                eprintln!("--- {} on {}", stringify!($test), b.info());
                let $backend: &dyn impasto::backend::Backend = &**b;
                $case;
            }
        }
    )+};
}
#[allow(unused_imports)]
pub(crate) use for_each_backend;
