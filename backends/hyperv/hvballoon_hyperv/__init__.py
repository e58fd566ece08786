"""The Hyper-V (PowerShell over WinRM) backend of hvballoon."""
