//! Unit tests of the plot module's scale choice and ticks.
use super::*;

#[test]
fn ticks_read_well() {
    let cases = [
        (1e3, "1000"),
        (2e4, "20k"),
        (3e6, "3M"),
        (0.25, "0.25"),
        (12.5, "12.5"),
    ];
    for (v, want) in cases
        .into_iter()
        .chain([(123.4, "123"), (0.0, "0"), (0.02, "0.02")])
    {
        assert_eq!(tick(v), want);
    }
}

#[test]
fn log_ticks_label_1_2_5_on_short_axes_and_powers_on_long_ones() {
    let (bold, light) = log_ticks(4.0, 320.0);
    assert_eq!(bold, vec![5.0, 10.0, 20.0, 50.0, 100.0, 200.0]);
    assert!(light.contains(&4.0) && light.contains(&300.0) && light.len() == 18);
    let (bold, _) = log_ticks(0.8, 12_000.0);
    assert_eq!(bold, vec![1.0, 10.0, 100.0, 1000.0, 10_000.0]);
    let (bold, light) = log_ticks(1.0, 1e12);
    assert_eq!(bold, vec![1.0, 100.0, 1e4, 1e6, 1e8, 1e10, 1e12]);
    assert!(light.is_empty());
}

#[test]
fn bounds_pad_and_start_at_zero() {
    let (lo, hi) = bounds([10.0, 110.0].into_iter(), false, false);
    assert!(
        lo > 5.0 && lo < 10.0 && hi > 110.0 && hi < 115.0,
        "{lo} {hi}"
    );
    assert_eq!(bounds([5.0, 9.0].into_iter(), false, true).0, 0.0);
    let (lo, hi) = bounds([1.0, 1000.0].into_iter(), true, true);
    assert!(
        lo > 0.5 && lo < 1.0 && hi > 1000.0 && hi < 2000.0,
        "{lo} {hi}"
    );
    assert_eq!(bounds([7.0, 7.0].into_iter(), false, false), (6.0, 8.0));
}
