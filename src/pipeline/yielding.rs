//! Work that yields the processor to the run's writer.
//!
//! `itap run` stores the rows on one thread (and SQLite's worker thread) while
//! training, scoring and evaluating the same rows on the others. The store
//! takes one writer at a time, so it cannot use more than about one core, and
//! it is the longer of the two: the run ends when the last row is stored. The
//! analysis can use every core. When both want the processor, the writer
//! should have it, and the analysis what is left: its threads run at a lower
//! scheduling priority (a nice value 10 above the caller's, at most 19) in a
//! pool of their own, made for the call and gone after it. Priority changes
//! only who runs first, never what is computed: the results do not depend on
//! it, nor on the number of threads.

/// How much lower (in nice values) the analysis's threads run than the caller.
const NICE_STEP: i32 = 10;

/// Runs `f` on a rayon pool of `threads` threads whose scheduling priority is
/// below the calling thread's (Linux; elsewhere the same pool at the same
/// priority). Rayon's parallel work inside `f` runs on that pool.
///
/// If the pool cannot be made, `f` runs on the calling thread, in the pool it
/// is in.
pub(crate) fn behind_the_writer<R: Send>(threads: usize, f: impl FnOnce() -> R + Send) -> R {
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(threads.max(1))
        .thread_name(|i| format!("itap-analysis-{i}"))
        .start_handler(|_| lower_this_thread())
        .build();
    match pool {
        Ok(pool) => pool.install(f),
        Err(e) => {
            tracing::debug!("no pool of lower priority for the analysis: {e}");
            f()
        }
    }
}

/// Raises the calling thread's nice value by [`NICE_STEP`] (up to 19). A
/// thread's nice value is its own on Linux (`setpriority(PRIO_PROCESS, tid)`);
/// raising it needs no privilege. A failure only costs speed: it is logged.
#[cfg(target_os = "linux")]
fn lower_this_thread() {
    use rustix::process::{getpriority_process, setpriority_process};
    let tid = Some(rustix::thread::gettid());
    let lowered = getpriority_process(tid)
        .and_then(|now| setpriority_process(tid, (now + NICE_STEP).min(19)));
    if let Err(e) = lowered {
        tracing::debug!("an analysis thread keeps its priority: {e}");
    }
}

/// Elsewhere the priority is the process's, not the thread's: left alone.
#[cfg(not(target_os = "linux"))]
fn lower_this_thread() {}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use super::*;

    fn nice_of_this_thread() -> i32 {
        rustix::process::getpriority_process(Some(rustix::thread::gettid())).unwrap()
    }

    #[test]
    fn the_pool_runs_below_the_caller_and_leaves_the_caller_as_it_was() {
        let caller = nice_of_this_thread();
        let seen = behind_the_writer(2, || {
            use rayon::prelude::*;
            // One reading from the thread `install` runs on, and one from
            // each of the pool's threads (a task per thread index).
            let mut on_threads: Vec<i32> = (0..64)
                .into_par_iter()
                .map(|_| nice_of_this_thread())
                .collect();
            on_threads.push(nice_of_this_thread());
            (rayon::current_num_threads(), on_threads)
        });
        assert_eq!(seen.0, 2);
        let expected = (caller + NICE_STEP).min(19);
        assert!(
            seen.1.iter().all(|&n| n == expected),
            "nice values in the pool {:?}, caller {caller}",
            seen.1
        );
        assert_eq!(nice_of_this_thread(), caller);
    }
}
