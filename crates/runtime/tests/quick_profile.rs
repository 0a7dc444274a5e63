//! The quick profile's cache, on a real trial sweep of this machine: kept while the machine runs
//! the sweep's anchor no faster than the cached sweep did, taken again when the whole cached
//! sweep ran slower than the machine runs now.

use models::{Backend, Net, zoo};
use predictor::Steadiness;
use runtime::{QuickProfiles, quick_profile};

#[test]
fn a_cached_profile_taken_while_the_machine_ran_slow_is_taken_again() {
    let cache = tempfile::tempdir().expect("temp dir");
    let lenet = zoo::build("lenet").expect("lenet");
    let profile = |net: &Net| -> QuickProfiles {
        quick_profile(
            cache.path(),
            Backend::Flex,
            std::slice::from_ref(net),
            Some(8),
            false,
        )
        .expect("quick profile")
    };
    let first = profile(&lenet);
    assert!(first.built && first.slow_before.is_none());
    let sweep = first.path.parent().expect("the cache dir").join("sweep");
    let set_fastest = |ms: f64| {
        let mut steadiness = Steadiness::read(&sweep)
            .expect("readable")
            .expect("the sweep writes its steadiness");
        steadiness.fastest_ms = ms;
        steadiness.write(&sweep).expect("write");
    };

    // A cached sweep whose fastest anchor was faster than any can be now: kept.
    set_fastest(1e-9);
    let kept = profile(&lenet);
    assert!(!kept.built && kept.slow_before.is_none());

    // A cached sweep whose fastest anchor took 1,000 s: the machine runs far faster now, so the
    // sweep and its profile are taken again, and the new sweep's calm is the machine's own.
    set_fastest(1e6);
    let again = profile(&lenet);
    assert!(again.built);
    assert!(
        again.slow_before.is_some_and(|ratio| ratio > 1e3),
        "{:?}",
        again.slow_before
    );
    let fresh = Steadiness::read(&sweep)
        .expect("readable")
        .expect("written again");
    assert!(
        fresh.fastest_ms > 0.0 && fresh.fastest_ms < 1e3,
        "{fresh:?}"
    );
    assert!(again.path.is_file());
}
