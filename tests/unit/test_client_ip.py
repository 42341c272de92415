"""Forwarded addresses are believed only as far as trusted proxies wrote them."""

from __future__ import annotations

from ipaddress import ip_address, ip_network

from ingress.client_ip import client_address, is_allowed

PROXIES = (ip_network("10.0.0.0/8"),)


def test_direct_caller_is_the_peer_and_its_forwarded_header_is_ignored() -> None:
    assert client_address("203.0.113.9", "198.51.100.1", PROXIES) == ip_address("203.0.113.9")


def test_behind_a_trusted_proxy_the_rightmost_untrusted_hop_is_the_client() -> None:
    forwarded = "1.2.3.4, 198.51.100.7, 10.0.0.5"
    assert client_address("10.0.0.2", forwarded, PROXIES) == ip_address("198.51.100.7")


def test_a_forged_leftmost_address_does_not_win() -> None:
    assert client_address("10.0.0.2", "203.0.113.1, 198.51.100.7", PROXIES) == ip_address(
        "198.51.100.7"
    )


def test_garbage_in_the_forwarded_chain_leaves_the_client_unknown() -> None:
    assert client_address("10.0.0.2", "198.51.100.7, nonsense", PROXIES) is None


def test_no_trusted_proxies_means_the_peer() -> None:
    assert client_address("10.0.0.2", "198.51.100.7", ()) == ip_address("10.0.0.2")


def test_allowlist() -> None:
    allow = (ip_network("198.51.100.0/24"), ip_network("2001:db8::/32"))
    assert is_allowed(ip_address("198.51.100.7"), allow)
    assert is_allowed(ip_address("2001:db8::1"), allow)
    assert not is_allowed(ip_address("203.0.113.1"), allow)
    assert not is_allowed(None, allow)
    assert is_allowed(None, None)
