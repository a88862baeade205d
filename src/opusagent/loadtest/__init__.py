"""Load tests: many simulated provider calls into a server on this machine (`opusagent
loadtest`), measured per turn, per frame and per call; and a server with instant fake stages
for measuring the framework alone (`opusagent.loadtest.bench_server`)."""
