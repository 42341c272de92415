"""The one AMQP adapter: connections, topology declaration, confirmed publishing, the worker's
subscription and the settlement of its deliveries. Nothing outside this package imports
aio-pika, aiormq or pamqp (tests/architecture checks it)."""
