// Command hello is a Windows executable the signing test signs.
package main

func main() {}
