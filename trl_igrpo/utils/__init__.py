"""Small pieces every folder of the package may use; they import nothing else from it (the bottom of the layering).

- :mod:`~trl_igrpo.utils.model_path`: is a ``model_name_or_path`` a local path or a Hub id, and does it exist;
- :mod:`~trl_igrpo.utils.context`: how many tokens a rollout needs and whether they fit the model's context;
- :mod:`~trl_igrpo.utils.extras`: optional packages (vLLM, loggers), checked before a run with the extra to install;
- :mod:`~trl_igrpo.utils.distributed`: the sharded engine a run asked for, and a clean end of a multi-process run;
- :mod:`~trl_igrpo.utils.imports`: ``"pkg.module.name"`` strings to objects;
- :mod:`~trl_igrpo.utils.seeds`: one seed from several counters (seed, step, process, ...).
"""
