package boltstore

// buckets are the top-level bbolt buckets of Hale's own repositories, created at Open. Each
// repository file names its buckets in a var and lists it here.
var buckets = [][]byte{}
