"""The hosted FTP/FTPS and SFTP endpoints warehouse systems push files to.

They are thin: they authenticate an account, keep the user inside its folder
(``jail``), write uploads to a hidden staging folder and hand each *complete*
file to intake through ``deliver(Arrival(...))``. Everything after that
(history, parsing, applying) belongs to intake.
"""
