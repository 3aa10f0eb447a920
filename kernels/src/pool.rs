//! A small thread pool for the hot loops: no allocation per parallel call.
//!
//! `ThreadPool::run(&f)` calls `f(i, n_threads)` once for every work index `i` in `0..n_threads`
//! and returns when all calls are done. The caller runs index 0 and then claims any index that no
//! worker has claimed yet, so a worker that the OS has not scheduled (a busy machine) delays
//! nothing: like rayon's `join`, work goes to whichever thread is actually running. Indices are
//! claimed with a compare-and-swap on one word holding (generation, next index), so a late worker
//! can never claim an index of a newer call.
//!
//! Workers wait for a new generation by spinning briefly, then park (a futex wait in std's Linux
//! parker); the caller does the same while it waits for claimed indices to finish. A decode step
//! calls `run` a few hundred times per token, so the hand-off has to cost microseconds, and it must
//! not allocate: the job is passed as a pointer to the caller's closure plus a monomorphised
//! trampoline, both stored in the pool.
//!
//! A panic in `f` on any thread is caught, every other thread is still waited for (they borrow
//! the caller's stack), and the first panic is then resumed on the caller.
//!
//! `run` is not re-entrant across threads: when the pool is already busy (a nested call from inside
//! `f`, or a second thread calling `run` at the same time), the calling thread runs all
//! `n_threads` indices itself, one after another. Results are the same, only slower.

use std::any::Any;
use std::cell::UnsafeCell;
use std::panic::{self, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, TryLockError};
use std::thread::{self, JoinHandle, Thread};
use std::time::{Duration, Instant};

/// How long a waiting thread spins before it parks. Between two mat-muls of a decode step the
/// caller does microseconds of serial work, so workers that spin this long rarely park mid-token.
const SPIN_FOR: Duration = Duration::from_micros(200);

/// Type-erased job: `call(data, thread_index, n_threads)` with `data` = `&F` of the caller.
#[derive(Clone, Copy)]
struct Job {
    data: *const (),
    call: unsafe fn(*const (), usize, usize),
}

/// Calls the closure behind `data`.
///
/// # Safety
/// `data` must point to a live `F`.
unsafe fn trampoline<F: Fn(usize, usize) + Sync>(data: *const (), i: usize, n: usize) {
    // SAFETY: the caller guarantees `data` is the `&F` that `run` stored and that it is still
    // alive (`run` does not return before every thread has finished with it).
    let f = unsafe { &*(data as *const F) };
    f(i, n);
}

struct Shared {
    /// (generation << 32) | next unclaimed index. The caller stores (g, 1) with Release after
    /// writing `job`/`caller`/`n_items`; a claimer CASes (g, i) -> (g, i + 1) with Acquire.
    claim: AtomicU64,
    /// Indices of the current generation finished (panicked ones included).
    done: AtomicUsize,
    shutdown: AtomicBool,
    /// Written only by the thread holding `run_lock` while no index of the previous generation is
    /// running (`done` reached the count); read by a claimer after its successful CAS, before it
    /// increments `done`, so the write happens-before the read and the value stays unchanged.
    job: UnsafeCell<Option<Job>>,
    /// The thread that called `run`, to unpark when the last index finishes.
    caller: UnsafeCell<Option<Thread>>,
    /// First panic payload caught on a worker (allocation only happens on a panic).
    panic: Mutex<Option<Box<dyn Any + Send + 'static>>>,
}

const IDX_MASK: u64 = 0xFFFF_FFFF;

impl Shared {
    /// Claims the next index of generation `gen` below `n`, if any.
    #[inline]
    fn try_claim(&self, gen: u64, n: usize) -> Option<usize> {
        let mut cur = self.claim.load(Ordering::Acquire);
        loop {
            if cur >> 32 != gen || (cur & IDX_MASK) as usize >= n {
                return None;
            }
            match self.claim.compare_exchange_weak(
                cur,
                cur + 1,
                Ordering::Acquire,
                Ordering::Acquire,
            ) {
                Ok(_) => return Some((cur & IDX_MASK) as usize),
                Err(now) => cur = now,
            }
        }
    }
}

// SAFETY: the UnsafeCells are written only by the `run_lock` holder while no claimed index is
// running, and read only by a thread that has claimed an index of the current generation (the
// Release store of `claim` / Acquire CAS pair orders the writes before the reads) and not yet
// marked it done. `Job::data` points to an `F: Sync`, so sharing it across threads is sound.
unsafe impl Sync for Shared {}
// SAFETY: as above; nothing in `Shared` is tied to the thread that created it.
unsafe impl Send for Shared {}

/// A pointer handed to the pool's threads by [`ThreadPool::for_each_chunk`], which gives each
/// thread disjoint elements behind it.
#[derive(Clone, Copy)]
struct SendPtr<T>(*mut T);
// SAFETY: only dereferenced in `for_each_chunk`, at elements no two threads share.
unsafe impl<T: Send> Sync for SendPtr<T> {}

impl<T> SendPtr<T> {
    /// The pointer (a method, so closures capture the `Sync` wrapper, not the raw field).
    #[inline]
    fn get(&self) -> *mut T {
        self.0
    }
}

/// A fixed set of worker threads that run one closure on all threads at once.
pub struct ThreadPool {
    shared: Arc<Shared>,
    workers: Vec<Thread>,
    handles: Vec<JoinHandle<()>>,
    n_threads: usize,
    run_lock: Mutex<()>,
}

impl std::fmt::Debug for ThreadPool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ThreadPool")
            .field("n_threads", &self.n_threads)
            .finish()
    }
}

impl ThreadPool {
    /// A pool of `n_threads` threads in total: the caller of `run` plus `n_threads - 1` workers.
    /// `n_threads` of 0 is treated as 1.
    ///
    /// Panics if the OS refuses to start a thread (as `std::thread::spawn` does).
    pub fn new(n_threads: usize) -> Self {
        let n_threads = n_threads.max(1);
        let shared = Arc::new(Shared {
            claim: AtomicU64::new(0),
            done: AtomicUsize::new(0),
            shutdown: AtomicBool::new(false),
            job: UnsafeCell::new(None),
            caller: UnsafeCell::new(None),
            panic: Mutex::new(None),
        });
        let mut handles = Vec::with_capacity(n_threads - 1);
        let mut workers = Vec::with_capacity(n_threads - 1);
        for index in 1..n_threads {
            let shared = Arc::clone(&shared);
            let handle = thread::Builder::new()
                .name(format!("ferrolm-worker-{index}"))
                .spawn(move || worker_loop(&shared, n_threads))
                .expect("failed to spawn a thread-pool worker");
            workers.push(handle.thread().clone());
            handles.push(handle);
        }
        ThreadPool {
            shared,
            workers,
            handles,
            n_threads,
            run_lock: Mutex::new(()),
        }
    }

    /// A pool with one thread per available CPU.
    pub fn with_available_parallelism() -> Self {
        Self::new(
            thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(1),
        )
    }

    /// Threads taking part in `run`, the caller included.
    pub fn n_threads(&self) -> usize {
        self.n_threads
    }

    /// Runs `f(i, chunk_i, scratch_t)` for every chunk `i` of `out` (`chunk` elements each; `out`
    /// a whole number of them), chunk `i` on thread `t = i % n_threads`, each thread with its own
    /// element of `scratch` (at least one per thread). The safe way to hand the threads disjoint
    /// outputs and private scratch: no chunk or scratch element is seen by two threads.
    pub fn for_each_chunk<T: Send, S: Send>(
        &self,
        out: &mut [T],
        chunk: usize,
        scratch: &mut [S],
        f: &(dyn Fn(usize, &mut [T], &mut S) + Sync),
    ) {
        let nt = self.n_threads;
        assert!(
            chunk > 0 && out.len() % chunk == 0,
            "for_each_chunk: {} elements are not whole chunks of {chunk}",
            out.len()
        );
        assert!(
            scratch.len() >= nt,
            "for_each_chunk: {} scratch elements for {nt} threads",
            scratch.len()
        );
        let n_chunks = out.len() / chunk;
        let (out, scratch) = (SendPtr(out.as_mut_ptr()), SendPtr(scratch.as_mut_ptr()));
        self.run(&|t, _| {
            // SAFETY: `run` calls this once per t in 0..nt, so scratch[t] (t < nt <= its length)
            // is borrowed by this call alone.
            let s = unsafe { &mut *scratch.get().add(t) };
            let mut i = t;
            while i < n_chunks {
                // SAFETY: chunk i (inside `out`: i < n_chunks) is taken only by the call with
                // t = i % nt, once; chunks do not overlap.
                let o = unsafe { std::slice::from_raw_parts_mut(out.get().add(i * chunk), chunk) };
                f(i, o, s);
                i += nt;
            }
        });
    }

    /// [`ThreadPool::for_each_chunk`] without scratch: `f(i, chunk_i)` for every chunk `i` of
    /// `out`, chunk `i` on thread `i % n_threads`.
    pub fn for_each_part<T: Send>(
        &self,
        out: &mut [T],
        chunk: usize,
        f: &(dyn Fn(usize, &mut [T]) + Sync),
    ) {
        // A Vec of zero-sized elements does not allocate.
        let mut none = vec![(); self.n_threads];
        self.for_each_chunk(out, chunk, &mut none, &|i, o, _| f(i, o));
    }

    /// Runs `f(i, n_threads)` for every `i` in `0..n_threads`, each on its own thread (the caller
    /// runs `i = 0`), and returns when all are done. Does not allocate. A panic in any call is
    /// propagated to the caller after all threads have finished.
    pub fn run<F: Fn(usize, usize) + Sync>(&self, f: &F) {
        let n = self.n_threads;
        if n == 1 {
            f(0, 1);
            return;
        }
        let _guard = match self.run_lock.try_lock() {
            Ok(g) => g,
            Err(TryLockError::Poisoned(p)) => p.into_inner(),
            Err(TryLockError::WouldBlock) => {
                // Busy (nested or concurrent call): do every index here, in order.
                for i in 0..n {
                    f(i, n);
                }
                return;
            }
        };
        let sh = &*self.shared;
        // SAFETY: we hold `run_lock`, and every index of the previous generation finished (`done`
        // reached n before the previous `run` returned), so no thread reads these cells now.
        unsafe {
            *sh.job.get() = Some(Job {
                data: f as *const F as *const (),
                call: trampoline::<F>,
            });
            *sh.caller.get() = Some(thread::current());
        }
        sh.done.store(0, Ordering::Relaxed);
        let gen = ((sh.claim.load(Ordering::Relaxed) >> 32) + 1) & IDX_MASK;
        // Index 0 is the caller's.
        sh.claim.store((gen << 32) | 1, Ordering::Release);
        for w in &self.workers {
            // Cheap when the worker is spinning (an atomic swap); a futex wake when it is parked.
            w.unpark();
        }

        let mut mine = panic::catch_unwind(AssertUnwindSafe(|| f(0, n)));
        let mut ran = 1;
        // Take over the indices no worker has claimed yet.
        while let Some(i) = sh.try_claim(gen, n) {
            let r = panic::catch_unwind(AssertUnwindSafe(|| f(i, n)));
            if mine.is_ok() {
                mine = r;
            }
            ran += 1;
        }
        sh.done.fetch_add(ran, Ordering::AcqRel);

        // Wait for the indices workers claimed: they borrow `f`, which lives on our stack.
        let start = Instant::now();
        let mut spins = 0u32;
        while sh.done.load(Ordering::Acquire) != n {
            spins = spins.wrapping_add(1);
            if spins % 64 == 0 && start.elapsed() > SPIN_FOR {
                // The last finisher unparks us; a stale unpark token only costs one more loop.
                thread::park_timeout(Duration::from_millis(1));
            } else {
                std::hint::spin_loop();
            }
        }

        if let Err(payload) = mine {
            panic::resume_unwind(payload);
        }
        let worker_panic = match sh.panic.lock() {
            Ok(mut g) => g.take(),
            Err(p) => p.into_inner().take(),
        };
        if let Some(payload) = worker_panic {
            panic::resume_unwind(payload);
        }
    }
}

fn worker_loop(sh: &Shared, n_threads: usize) {
    let mut seen = 0u64;
    loop {
        // Wait for a new generation: spin, then park.
        let start = Instant::now();
        let mut spins = 0u32;
        let gen = loop {
            if sh.shutdown.load(Ordering::Acquire) {
                return;
            }
            let g = sh.claim.load(Ordering::Acquire) >> 32;
            if g != seen {
                break g;
            }
            spins = spins.wrapping_add(1);
            if spins % 64 == 0 && start.elapsed() > SPIN_FOR {
                thread::park();
            } else {
                std::hint::spin_loop();
            }
        };
        seen = gen;
        while let Some(i) = sh.try_claim(gen, n_threads) {
            // SAFETY: we hold a claimed index of generation `gen`, so the caller's writes to
            // `job`/`caller` are visible (Acquire CAS) and stay unchanged until we mark it done.
            let (job, caller) = unsafe { (*sh.job.get(), (*sh.caller.get()).clone()) };
            if let Some(job) = job {
                let result = panic::catch_unwind(AssertUnwindSafe(|| {
                    // SAFETY: `job.data` is the caller's `&F`, alive until every index is done,
                    // and `job.call` is `trampoline::<F>` for that same `F`.
                    unsafe { (job.call)(job.data, i, n_threads) }
                }));
                if let Err(payload) = result {
                    let mut slot = match sh.panic.lock() {
                        Ok(g) => g,
                        Err(p) => p.into_inner(),
                    };
                    if slot.is_none() {
                        *slot = Some(payload);
                    }
                }
            }
            if sh.done.fetch_add(1, Ordering::AcqRel) + 1 == n_threads {
                if let Some(c) = caller {
                    c.unpark();
                }
            }
        }
    }
}

impl Drop for ThreadPool {
    fn drop(&mut self) {
        self.shared.shutdown.store(true, Ordering::Release);
        for w in &self.workers {
            w.unpark();
        }
        for h in self.handles.drain(..) {
            // A worker never panics outside `catch_unwind`; ignore the impossible error rather
            // than panic in drop.
            let _ = h.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every chunk is visited once, with its own index, on the thread `i % n` (its scratch).
    #[test]
    fn for_each_chunk_covers_every_chunk_once() {
        for n in 1..=3 {
            let pool = ThreadPool::new(n);
            let mut out = vec![0usize; 7 * 4];
            let mut scratch = vec![Vec::new(); n];
            pool.for_each_chunk(&mut out, 4, &mut scratch, &|i, o, s: &mut Vec<usize>| {
                o.fill(i + 1);
                s.push(i);
            });
            for (i, c) in out.chunks(4).enumerate() {
                assert!(c.iter().all(|&v| v == i + 1), "chunk {i}: {c:?}");
            }
            for (t, s) in scratch.iter().enumerate() {
                let want: Vec<usize> = (t..7).step_by(n).collect();
                assert_eq!(*s, want, "thread {t} of {n}");
            }
        }
    }

    #[test]
    fn runs_every_index_once() {
        for n in 1..=4 {
            let pool = ThreadPool::new(n);
            assert_eq!(pool.n_threads(), n);
            for _ in 0..200 {
                let hits: Vec<AtomicUsize> = (0..n).map(|_| AtomicUsize::new(0)).collect();
                pool.run(&|i, nt| {
                    assert_eq!(nt, n);
                    hits[i].fetch_add(1, Ordering::Relaxed);
                });
                for h in &hits {
                    assert_eq!(h.load(Ordering::Relaxed), 1);
                }
            }
        }
    }

    #[test]
    fn sums_a_range_in_parallel() {
        let pool = ThreadPool::new(3);
        let data: Vec<u64> = (0..100_000).collect();
        let total = AtomicU64::new(0);
        pool.run(&|i, n| {
            let lo = data.len() * i / n;
            let hi = data.len() * (i + 1) / n;
            total.fetch_add(data[lo..hi].iter().sum::<u64>(), Ordering::Relaxed);
        });
        assert_eq!(total.load(Ordering::Relaxed), 99_999 * 100_000 / 2);
    }

    #[test]
    fn worker_panic_reaches_caller_and_pool_survives() {
        let pool = ThreadPool::new(2);
        let r = panic::catch_unwind(AssertUnwindSafe(|| {
            pool.run(&|i, _| {
                if i == 1 {
                    panic!("boom on worker");
                }
            })
        }));
        let payload = r.expect_err("the worker's panic must reach the caller");
        assert_eq!(
            payload.downcast_ref::<&str>().copied(),
            Some("boom on worker")
        );
        // Still usable afterwards.
        let count = AtomicUsize::new(0);
        pool.run(&|_, _| {
            count.fetch_add(1, Ordering::Relaxed);
        });
        assert_eq!(count.load(Ordering::Relaxed), 2);
    }

    #[test]
    fn caller_panic_waits_for_workers() {
        let pool = ThreadPool::new(2);
        let done = AtomicUsize::new(0);
        let r = panic::catch_unwind(AssertUnwindSafe(|| {
            pool.run(&|i, _| {
                if i == 0 {
                    panic!("boom on caller");
                }
                thread::sleep(Duration::from_millis(20));
                done.fetch_add(1, Ordering::Relaxed);
            })
        }));
        assert!(r.is_err());
        assert_eq!(
            done.load(Ordering::Relaxed),
            1,
            "run returned before the worker finished"
        );
    }

    #[test]
    fn nested_run_does_not_deadlock() {
        let pool = ThreadPool::new(2);
        let count = AtomicUsize::new(0);
        pool.run(&|_, _| {
            pool.run(&|_, _| {
                count.fetch_add(1, Ordering::Relaxed);
            });
        });
        assert_eq!(count.load(Ordering::Relaxed), 4);
    }

    #[test]
    fn workers_wake_after_parking() {
        let pool = ThreadPool::new(2);
        for _ in 0..3 {
            thread::sleep(Duration::from_millis(5)); // long enough for workers to park
            let count = AtomicUsize::new(0);
            pool.run(&|_, _| {
                count.fetch_add(1, Ordering::Relaxed);
            });
            assert_eq!(count.load(Ordering::Relaxed), 2);
        }
    }
}
