"""The learner domain in digital_twin.db: the tables' descriptors (``tables``), profiles,
sessions, knowledge states, consents and legal holds, the one service for requests about a
data subject (``subject_requests``) and the domain's personal-data provider (``privacy``)."""
