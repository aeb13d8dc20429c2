"""Local fakes of outside services (Alpaca), for tests that must not reach the internet."""
