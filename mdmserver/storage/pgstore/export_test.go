package pgstore

// MigrationFile returns an embedded migration's text, for the tests.
func MigrationFile(name string) (string, error) {
	b, err := migrationFiles.ReadFile("migrations/" + name)
	return string(b), err
}
