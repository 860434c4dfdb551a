// The request path allocates heavily (jq mappings build many small values);
// mimalloc serves that from per-thread heaps, where glibc's malloc took a
// quarter of the CPU under load (see BENCHMARKS.md).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

// mimalloc's `mi_option_set` and the index of `mi_option_arena_eager_commit`
// in its `mi_option_t` (mimalloc.h; the same in v2 and v3).
#[cfg(target_os = "linux")]
extern "C" {
    fn mi_option_set(option: std::ffi::c_int, value: std::ffi::c_long);
}
#[cfg(target_os = "linux")]
const MI_OPTION_ARENA_EAGER_COMMIT: std::ffi::c_int = 4;

/// Runs before `main`, ahead of the allocations that make mimalloc reserve its
/// first arena: commit arena memory as pages are used rather than up front.
/// Same speed, 20-30 MB less resident memory at start and under load
/// (BENCHMARKS.md).
#[cfg(target_os = "linux")]
extern "C" fn lazy_arena_commit() {
    // SAFETY: sets a plain integer option and allocates nothing.
    unsafe { mi_option_set(MI_OPTION_ARENA_EAGER_COMMIT, 0) };
}

#[cfg(target_os = "linux")]
#[used]
#[link_section = ".init_array.00100"]
static LAZY_ARENA_COMMIT: extern "C" fn() = lazy_arena_commit;

fn main() -> std::process::ExitCode {
    lgsp::cli::main()
}
