"""What is built on the engine: the command line, the benchmarks, the DiceBear data builder and the
evaluator network the quality benchmark scores with. Nothing in `meta_core`'s engine imports this."""
