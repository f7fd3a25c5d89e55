package localapi

// PipeSDDL is the named pipe's security descriptor (Windows), in SDDL:
//
//   - D:P  a protected DACL: nothing is inherited from above;
//   - (D;;GA;;;NU)  network logons are denied everything (a deny ACE, first, so it wins);
//   - (A;;GA;;;SY)(A;;GA;;;BA)  SYSTEM (the agent) and administrators have full control;
//   - (A;;0x12019b;;;IU)  interactive users (signed in at the console or by Remote Desktop)
//     may read and write: FILE_GENERIC_READ | FILE_GENERIC_WRITE without FILE_APPEND_DATA
//     (0x4), which on a pipe is FILE_CREATE_PIPE_INSTANCE: a user could otherwise create
//     instances of the pipe and pose as the agent to other users' apps.
//
// Everyone else (services, anonymous, other network accounts) has no entry and so no access.
const PipeSDDL = "D:P(D;;GA;;;NU)(A;;GA;;;SY)(A;;GA;;;BA)(A;;0x12019b;;;IU)"
