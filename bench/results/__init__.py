"""What runs leave behind and what is published from it: every path snnbench reads or writes
(:mod:`~bench.results.paths`), the run records (:mod:`~bench.results.records`), and ``bench tables``
(:mod:`~bench.results.publish`: grouping in :mod:`~bench.results.aggregate`, tables, plots, the README)."""
