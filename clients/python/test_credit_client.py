"""The client's proof checks against trees built here from RFC 9162's definitions
(section 2.1.1 for the tree hash, 2.1.3.1 for the audit path), and against tampering.

    python3 -m unittest discover -s clients/python
"""

import unittest

import credit_client as client


def leaf(data):
    return client.sha256(b"\x00" + data)


def mth(leaves):
    """The tree hash of `leaves` (their leaf hashes), by definition."""
    if len(leaves) == 1:
        return leaves[0]
    k = 1
    while k * 2 < len(leaves):
        k *= 2
    return client.node_hash(mth(leaves[:k]), mth(leaves[k:]))


def path(m, leaves):
    """The audit path of leaf `m`, by definition."""
    if len(leaves) == 1:
        return []
    k = 1
    while k * 2 < len(leaves):
        k *= 2
    if m < k:
        return path(m, leaves[:k]) + [mth(leaves[k:])]
    return path(m - k, leaves[k:]) + [mth(leaves[:k])]


class InclusionProofs(unittest.TestCase):
    def test_every_leaf_of_every_tree_up_to_33_is_proved(self):
        for size in range(1, 34):
            leaves = [leaf(bytes([i])) for i in range(size)]
            root = mth(leaves)
            for m in range(size):
                got = client.root_from_inclusion_proof(m, size, leaves[m], path(m, leaves))
                self.assertEqual(got, root, (m, size))

    def test_a_tampered_proof_leads_nowhere_near_the_root(self):
        size = 13
        leaves = [leaf(bytes([i])) for i in range(size)]
        root = mth(leaves)
        for m in range(size):
            good = path(m, leaves)
            prove = client.root_from_inclusion_proof
            self.assertNotEqual(prove(m, size, leaf(b"other"), good), root)
            self.assertNotEqual(prove((m + 1) % size, size, leaves[m], good), root)
            self.assertIsNone(prove(m, size, leaves[m], good + [root]))
            if good:
                self.assertIsNone(prove(m, size, leaves[m], good[:-1]))
                flipped = [bytes([good[0][0] ^ 1]) + good[0][1:]] + good[1:]
                self.assertNotEqual(prove(m, size, leaves[m], flipped), root)
        self.assertIsNone(client.root_from_inclusion_proof(size, size, leaves[0], []))


class TreeHeads(unittest.TestCase):
    def test_the_signed_message_is_the_one_the_proto_describes(self):
        class Head:
            tree_size = 0x0102
            root_hash = b"\x11" * 32
            timestamp_ms = -2
            key_id = b"\x22" * 32

        message = client.tree_head_message(Head)
        self.assertEqual(
            message,
            b"credit-node/sth/v1\x00"
            + b"\x00" * 6
            + b"\x01\x02"
            + b"\x11" * 32
            + b"\xff" * 7
            + b"\xfe"
            + b"\x22" * 32,
        )


if __name__ == "__main__":
    unittest.main()
