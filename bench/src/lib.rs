//! Benchmarks of wsgate's hot paths; see `benches/hot_paths.rs` and
//! docs/PERFORMANCE.md. The library itself is empty.
