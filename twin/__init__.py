"""learner twin: the learner digital-twin service and the shared encrypted storage core."""

__version__ = "0.1.0"
