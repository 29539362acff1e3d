"""What runs leave behind and what is published from it (every path is in :mod:`bench.paths`): the run
records (:mod:`~bench.results.records`), ``bench tables``
(:mod:`~bench.results.publish`: grouping in :mod:`~bench.results.aggregate`, statistics over seeds in
:mod:`~bench.results.stats`, numbers and markers in :mod:`~bench.results.formatting`, tables, plots, the
README) and ``bench compare``
(:mod:`~bench.results.compare`). None of it imports torch."""
