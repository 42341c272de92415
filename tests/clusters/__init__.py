"""Clusters started beside the machine's default services, for failover tests: three RabbitMQ
nodes, a Postgres primary with a synchronous standby, and network partitions between them."""
