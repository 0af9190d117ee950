"""Stage 2 engines: :mod:`.base` (the launch plan and the :class:`~.base.Engine` interface), one module per engine
(:mod:`.verl`, :mod:`.soft_grpo`, :mod:`.local`) and :mod:`.registry` (``ENGINES`` and ``get_engine``)."""
