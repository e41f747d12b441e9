"""The broker side of the fleet link: start one, secure one, give buses and people their keys.

    launch      mosquitto on a free loopback port (demo, tests); amqtt as the zero-install fallback
    embedded    the amqtt process behind that fallback
    secure      the production mosquitto config rendered from deploy/ (TLS, ACL, passwords)
    tls         development certificates with openssl
    provision   a bus's or service user's credentials, mosquitto's password format
    errors      the exception tree of this room

Starting processes is all this room does at run time; the rules of who may say what on which topic
live in deploy/mosquitto (the ACL) and protocols/topics.py (the tree).
"""

from busfleet.broker.errors import BrokerError, ProvisionError, TlsError
from busfleet.broker.launch import Broker, free_port, run_broker, run_embedded, run_mosquitto

__all__ = [
    "Broker",
    "BrokerError",
    "ProvisionError",
    "TlsError",
    "free_port",
    "run_broker",
    "run_embedded",
    "run_mosquitto",
]
