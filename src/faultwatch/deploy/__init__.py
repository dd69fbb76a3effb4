"""`faultwatch deploy`: blue/green, canary and shadow on one host, behind HAProxy on loopback.

The operations: ops (up, stage, switch, rollback, down), canary (canary, shadow, analyse),
status; each returns a result (results) or raises a named error (errors). Beneath them: state
(the state file and its lock), processes (the colours' servers), router (HAProxy), routing
(weights, switch, shadow), live (the registry follows the traffic), analysis (the gate),
versions (a registry version's model), config (params, the prediction log, the router's
configuration), containers. The CLI prints them: faultwatch.cli.deploy_verbs.
"""
