"""Tests of the CDK app (in-process synth)."""
