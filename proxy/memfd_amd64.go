package proxy

// sysMemfdCreate is memfd_create's number; the syscall package lists it
// for arm64 but not for amd64.
const sysMemfdCreate = 319
