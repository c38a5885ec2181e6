"""Settings from the environment (secrets as SecretStr), and the logging set-up that masks them."""
