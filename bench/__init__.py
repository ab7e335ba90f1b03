"""scopesr.bench: measuring scopesr (``sr-bench`` and the code of the ``benchmarks/`` scripts).

The top floor of the project: it may import ``scopesr.converters``, ``scopesr.trainer`` and
``scopesr.sdk``; nothing in those packages (nor demo_pi) imports it.

sr-bench, one job per module:
    cli          the command (options, exit status)
    run          one run: measure, then write bench.json / bench.md / bench.png
    settings     what a run measures and how hard (Settings, Budget)
    inputs       the real images timed on
    subjects     trainer presets as live modules with random weights
    backends     torch / ONNX Runtime / TFLite upscalers for a preset
    peers/       the bundled OpenCV ESPCN/FSRCNN x4 models and their runner (Apache-2.0)
    speed        Table 3 analogue (speed tables, reference rows)
    evaluation   Table 2 analogue per degradation (scopesr.sdk.quality.evaluate on real held-out images)
    report       markdown, JSON and the plot
    progress     the progress bar
    release      sr-bench release: bundle trained weights as the SDK's default, scored per degradation
    torch_module     a live nn.Module as an SDK backend
Shared by every benchmark:
    timing       the one timing helper (median/min/max after warm-up, optional sync)
    machine      the one machine describer (CPU, SIMD flags, cores, memory, load, versions, GPU)
    results      record a script's figures with the machine
The benchmark scripts' code:
    gpu              the GPU path (sr-bench's GPU targets, benchmarks/bench_gpu.py)
    tiling_overhead  benchmarks/bench_tiling.py
    memory           benchmarks/bench_memory.py
    student_teacher  benchmarks/bench_student.py
    small_frame      benchmarks/bench_small_frame.py (the SDK's overhead on a 64x64 frame)
"""
