"""External Stage 2 engines: each builds a :class:`tradelab.grpo.engines.base.LaunchPlan` from the config."""
