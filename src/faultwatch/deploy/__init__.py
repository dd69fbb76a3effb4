"""`faultwatch deploy`: blue/green, canary and shadow on one host, behind HAProxy on loopback."""
