"""Settings for the whole test session.

The app computes a new demo world's stored analyses in a background thread
(:func:`pages._ui.start_first_start_analyses`); page tests that build tiny worlds turn that off, so no
thread outlives its test or writes to the default model registry. The tests of that feature turn it
back on for themselves.
"""
import os

os.environ["RETENTION_FIRST_START_ANALYSES"] = "0"
