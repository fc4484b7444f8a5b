"""The workspace: the marketer's campaigns, segments, schedules and templates, loaded and validated.

Imports nothing from the engine but ``engine.errors``: every other layer reads these models.
"""
