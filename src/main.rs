// The request path allocates heavily (jq mappings build many small values);
// mimalloc serves that from per-thread heaps, where glibc's malloc took a
// quarter of the CPU under load (see BENCHMARKS.md).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    lgsp::cli::main()
}
