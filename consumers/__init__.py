"""The consumer role: a local authority reads its delivery topic into its social workers' queues."""
