//! Proves the claim the executors' throughput rests on: once a Scratch is
//! warm, running simulations allocates nothing. A counting global allocator
//! wraps the system one and counts the allocations of the test's own
//! thread only: the test harness's threads (output capture, the slow-test
//! timer) allocate when they like.

#![allow(
    unsafe_code,
    reason = "a GlobalAlloc impl is unsafe by definition; it only counts and delegates"
)]

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

use workload::{Event, Workload, WorkloadSpec};

struct Counting;

thread_local! {
    // Const-initialized and without a destructor: reading it never allocates.
    static ALLOCATIONS: Cell<u64> = const { Cell::new(0) };
}

fn count() {
    let _ = ALLOCATIONS.try_with(|n| n.set(n.get() + 1));
}

fn allocations() -> u64 {
    ALLOCATIONS.with(Cell::get)
}

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        count();
        // SAFETY: forwarded unchanged to the system allocator.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: `ptr` came from `System.alloc` with this layout.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        count();
        // SAFETY: forwarded unchanged to the system allocator.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

#[test]
fn warm_runs_do_not_allocate() {
    let mut greedy = Event::spring_league();
    greedy.teams[1].strategy = workload::event::Strategy::Greedy;
    greedy.teams[0].strategy = workload::event::Strategy::ComboUnlocking;
    for spec in [
        WorkloadSpec::bingo_default(),
        WorkloadSpec::Bingo { event: greedy },
        WorkloadSpec::Sum,
    ] {
        let w = Workload::new(&spec).unwrap();
        let mut scratch = w.scratch();
        let mut out = vec![0; w.width()];
        let mut summary = w.empty_summary();
        w.run(1, 0, &mut scratch, &mut out);
        let mut values = Vec::with_capacity(w.width() * 500);
        let before = allocations();
        for i in 0..500 {
            w.run(1, i, &mut scratch, &mut out);
        }
        w.run_range(2, 0, 500, &mut scratch, &mut values, &mut summary);
        let allocations = allocations() - before;
        assert_eq!(
            allocations,
            0,
            "{} allocated {allocations} times in 1000 warm runs",
            w.name()
        );
        assert_eq!(summary.runs(), 500);
    }
}
