"""The transfer engine: plans, runs and settles every copy the manager makes."""
