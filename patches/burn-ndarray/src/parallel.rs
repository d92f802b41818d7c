/// Macro for running a function in parallel.
#[cfg(feature = "multi-threads")]
#[macro_export(local_inner_macros)]
macro_rules! run_par {
    (
        $func:expr
    ) => {{
        use rayon::prelude::*;

        #[allow(clippy::redundant_closure_call)]
        rayon::scope(|_| $func())
    }};
}

/// Macro for running a function in parallel.
#[cfg(not(feature = "multi-threads"))]
#[macro_export(local_inner_macros)]
macro_rules! run_par {
    (
        $func:expr
    ) => {{ $func() }};
}

/// Macro for iterating in parallel.
#[cfg(not(feature = "multi-threads"))]
#[macro_export(local_inner_macros)]
macro_rules! iter_par {
    (
        $iter:expr
    ) => {{ $iter }};
}

/// Macro for iterating in parallel.
#[cfg(feature = "multi-threads")]
#[macro_export(local_inner_macros)]
macro_rules! iter_par {
    (
        $iter:expr
    ) => {{ $iter.into_par_iter() }};
}

/// Macro for iterating in parallel.
#[cfg(feature = "multi-threads")]
#[macro_export(local_inner_macros)]
macro_rules! iter_slice_par {
    (
        $slice:expr
    ) => {{ $slice.into_par_iter() }};
}

/// Macro for iterating in parallel.
#[cfg(not(feature = "multi-threads"))]
#[macro_export(local_inner_macros)]
macro_rules! iter_slice_par {
    (
        $slice:expr
    ) => {{ $slice.iter() }};
}

/// Macro for iterating over a range in parallel.
#[cfg(feature = "multi-threads")]
#[macro_export(local_inner_macros)]
macro_rules! iter_range_par {
    (
        $start:expr, $end:expr
    ) => {{ ($start..$end).into_par_iter() }};
}

/// Macro for iterating over a range in parallel.
#[cfg(not(feature = "multi-threads"))]
#[macro_export(local_inner_macros)]
macro_rules! iter_range_par {
    (
        $start:expr, $end:expr
    ) => {{ ($start..$end) }};
}

/// Elements below which an element-wise kernel runs on the calling thread: there, rayon's
/// fork/join costs more than it saves.
pub(crate) const PAR_ELEMWISE_MIN: usize = 1 << 15;

/// Cover `0..len` with contiguous ranges and call `f` on each: one range per rayon thread, run in
/// parallel, when `len >= PAR_ELEMWISE_MIN` (every range but the last a multiple of 64 elements
/// long, so SIMD alignment is the same as in one pass), else `f(0..len)` on this thread. For
/// element-wise kernels, whose results do not depend on the split.
pub(crate) fn for_each_range<F: Fn(core::ops::Range<usize>) + Sync + Send>(len: usize, f: F) {
    #[cfg(feature = "multi-threads")]
    {
        use rayon::prelude::*;
        let threads = rayon::current_num_threads();
        if threads > 1 && len >= PAR_ELEMWISE_MIN {
            let chunk = len.div_ceil(threads).next_multiple_of(64);
            (0..len.div_ceil(chunk))
                .into_par_iter()
                .for_each(|i| f(i * chunk..((i + 1) * chunk).min(len)));
            return;
        }
    }
    f(0..len)
}

/// `f(part)` on each part of `buf` that [`for_each_range`] covers (in parallel from
/// `PAR_ELEMWISE_MIN` elements): an in-place element-wise kernel split across threads.
pub(crate) fn for_each_part_mut<T, F>(buf: &mut [T], f: F)
where
    T: Send,
    F: Fn(&mut [T]) + Sync + Send,
{
    let (ptr, len) = (buf.as_mut_ptr() as usize, buf.len());
    for_each_range(len, |r| {
        // SAFETY: the ranges are disjoint and inside `buf`, which this call borrows mutably, so
        // each part is the only reference to its elements
        let part =
            unsafe { core::slice::from_raw_parts_mut((ptr as *mut T).add(r.start), r.len()) };
        f(part)
    });
}

/// `f(input part, out part)` on each pair of equal parts of `input` and `out` that
/// [`for_each_range`] covers: an element-wise kernel from one buffer into another, split
/// across threads.
pub(crate) fn for_each_part<T, Out, F>(input: &[T], out: &mut [Out], f: F)
where
    T: Sync,
    Out: Send,
    F: Fn(&[T], &mut [Out]) + Sync + Send,
{
    assert_eq!(
        input.len(),
        out.len(),
        "element-wise kernel: input and output lengths"
    );
    let ptr = out.as_mut_ptr() as usize;
    for_each_range(input.len(), |r| {
        // SAFETY: as in `for_each_part_mut`: disjoint ranges inside the mutably borrowed `out`
        let part =
            unsafe { core::slice::from_raw_parts_mut((ptr as *mut Out).add(r.start), r.len()) };
        f(&input[r], part)
    });
}

/// `array.mapv_into(f)`, on rayon's threads when the tensor has at least `PAR_ELEMWISE_MIN`
/// elements.
pub(crate) fn par_mapv_into<E, F>(array: crate::SharedArray<E>, f: F) -> crate::SharedArray<E>
where
    E: Copy + Send + Sync,
    F: Fn(E) -> E + Sync + Send,
{
    #[cfg(feature = "multi-threads")]
    if rayon::current_num_threads() > 1 && array.len() >= PAR_ELEMWISE_MIN {
        let mut out = array.into_owned();
        out.par_mapv_inplace(f);
        return out.into_shared();
    }
    array.mapv_into(f).into_shared()
}
