"""Stage 2 engines: :mod:`.base` (the launch plan), :mod:`.interface` (the :class:`~.interface.Engine` interface),
one module per engine (:mod:`.verl`, :mod:`.soft_grpo`, :mod:`.local`) and :mod:`.registry` (``ENGINES``,
``get_engine``)."""
