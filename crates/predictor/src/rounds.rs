//! Interleaved rounds: timing several networks one pass at a time, round after round.
//!
//! A shared machine has slow moments (another tenant, a frequency change) that last longer
//! than a few passes. Timed back to back, every pass of one network can fall into one such
//! moment, and two profiles of one machine then disagree on that network by 10–20 %. Taking one
//! pass of each network per round spreads each network's passes over the whole measurement, so
//! a slow moment touches a pass or two of each, and the median sets them aside.

/// Runs `warmup` unmeasured rounds and then `rounds` measured ones; each round calls `run(i)`
/// once for every item `i` in `0..count`, in order. Returns each item's measured results, in
/// round order, or the first error.
pub fn interleaved<T, E>(
    count: usize,
    warmup: usize,
    rounds: usize,
    mut run: impl FnMut(usize) -> Result<T, E>,
) -> Result<Vec<Vec<T>>, E> {
    let mut results: Vec<Vec<T>> = (0..count).map(|_| Vec::with_capacity(rounds)).collect();
    for round in 0..warmup + rounds {
        for (i, item) in results.iter_mut().enumerate() {
            let result = run(i)?;
            if round >= warmup {
                item.push(result);
            }
        }
    }
    Ok(results)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_round_visits_every_item_once_and_warm_up_rounds_are_dropped() {
        let mut calls = Vec::new();
        let results = interleaved(3, 1, 2, |i| -> Result<usize, ()> {
            calls.push(i);
            Ok(calls.len())
        })
        .expect("no error");
        assert_eq!(calls, [0, 1, 2, 0, 1, 2, 0, 1, 2]);
        // Item 0's measured calls were the 4th and 7th.
        assert_eq!(results, [vec![4, 7], vec![5, 8], vec![6, 9]]);
    }

    #[test]
    fn the_first_error_stops_the_rounds() {
        let mut calls = 0;
        let result = interleaved(2, 0, 3, |i| {
            calls += 1;
            if calls == 4 {
                Err(format!("item {i}"))
            } else {
                Ok(())
            }
        });
        assert_eq!(result, Err("item 1".to_string()));
        assert_eq!(calls, 4);
    }
}
