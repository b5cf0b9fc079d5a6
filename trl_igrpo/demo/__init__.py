"""The offline default: synthetic verifiable tasks and the warm-started tiny model that ``make demo`` and the examples
train, so everything runs without the Hub.

- :mod:`~trl_igrpo.demo.arithmetic`: arithmetic problems with exact answers (``prompt`` + ``solution``);
- :mod:`~trl_igrpo.demo.warm_start`: the cached SFT warm start of the demo model;
- :mod:`~trl_igrpo.demo.rpo_preferences`: graded preference data and rewards for the RPO examples.
"""
