package inventory

// DecodeCursor is decodeCursor, for the fuzz test outside the package.
var DecodeCursor = decodeCursor
