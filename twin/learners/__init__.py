"""The learner domain: profiles, learning sessions and knowledge states in digital_twin.db."""
