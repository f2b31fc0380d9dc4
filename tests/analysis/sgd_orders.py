"""sgd's batch orders (DESIGN.md §1.5, src/flow/sgd.hpp) written out from the documented recipe, independently
of the C++ code: Fisher–Yates on 0..n−1 with eomlab's portable xoshiro256** seeded through splitmix64, on the
stream 0x5347440000000000 + epoch. The oracle for tests of the binary's and the module's orders."""
MASK = (1 << 64) - 1


class Rng:
    """eomlab's Rng (src/core/rng.cpp): xoshiro256** seeded through splitmix64."""

    def __init__(self, seed, stream=0):
        x = (seed ^ (stream * 0xD1B54A32D192ED03)) & MASK
        self.s = []
        for _ in range(4):
            x = (x + 0x9E3779B97F4A7C15) & MASK
            z = x
            z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & MASK
            z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & MASK
            self.s.append(z ^ (z >> 31))

    @staticmethod
    def rotl(x, k):
        return ((x << k) | (x >> (64 - k))) & MASK

    def next_u64(self):
        s = self.s
        result = (self.rotl((s[1] * 5) & MASK, 7) * 9) & MASK
        t = (s[1] << 17) & MASK
        s[2] ^= s[0]
        s[3] ^= s[1]
        s[1] ^= s[2]
        s[0] ^= s[3]
        s[2] ^= t
        s[3] = self.rotl(s[3], 45)
        return result

    def below(self, n):
        limit = MASK - MASK % n
        while True:
            x = self.next_u64()
            if x < limit:
                return x % n


def permutation(seed, epoch, n):
    p = list(range(n))
    rng = Rng(seed, 0x5347440000000000 + epoch)
    for i in range(n - 1, 0, -1):
        j = rng.below(i + 1)
        p[i], p[j] = p[j], p[i]
    return p
