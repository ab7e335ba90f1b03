"""scopesr.bench: measuring scopesr (``sr-bench``, the benchmark scripts' logic).

The top floor of the project: it may import ``scopesr.converters``, ``scopesr.trainer`` and
``scopesr.sdk``; nothing in those packages imports it.
"""
