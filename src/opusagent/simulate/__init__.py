"""Simulated callers: personas and scenarios, a runner that calls an agent over a real bridge (or
its web chat), a judge of the callee's record, and reports (`opusagent simulate`)."""
