"""`nace-app`, the command line (`main`)."""
