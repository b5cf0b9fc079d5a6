"""The offline default: synthetic verifiable tasks, their warm-started tiny models, and the preference data of the RPO
examples, so ``make demo``, the examples and the benchmarks run without the Hub.

- :mod:`~trl_igrpo.demo.arithmetic`: one-operation arithmetic problems with exact answers (``prompt`` + ``solution``),
  the task of ``make demo``;
- :mod:`~trl_igrpo.demo.warm_start`: the demo model's SFT warm start (shipped in the package, rebuilt by
  ``make warm-start``), and the SFT recipe both warm starts share;
- :mod:`~trl_igrpo.demo.chained_arithmetic`: multi-step problems whose drafts can help a refinement, the task of
  ``benchmarks/igrpo_vs_grpo_chained.py``;
- :mod:`~trl_igrpo.demo.chained_warm_start`: that task's warm start (built and cached on first use);
- :mod:`~trl_igrpo.demo.rpo_preferences`: graded preference data and rewards for the RPO examples.
"""
